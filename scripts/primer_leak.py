"""Primer leak (issue 15): over the style bank x 20 texts, how many lines start with the primer's
last word, read by our recogniser (a line whose own first word is read is no leak).

    python scripts/primer_leak.py [MODEL]
"""
import sys, json, time, numpy as np, handsynth
from handsynth.recognizer import DEFAULT_RECOGNIZER, load_recognizer, recognize
from handsynth.styles import builtin_styles
from handsynth.sampling import SamplingOptions
hw = handsynth.load_model(sys.argv[1] if len(sys.argv) > 1 else None)
rec = load_recognizer(DEFAULT_RECOGNIZER)
texts = ["the quick brown fox", "meet me at noon", "a letter for you", "thank you so much", "see you soon",
         "it was a fine day", "please call me back", "we will be there", "good luck with it", "my dear friend",
         "all is well here", "the rain has stopped", "bring the book", "one more thing", "how are you",
         "send my love", "in the morning", "after the party", "a cup of tea", "on the way home"]
leaks, total, t0 = [], 0, time.time()
for st in builtin_styles():
    last = st.text.split()[-1].strip(".,;:!?\"'").lower()
    lines = hw.lines(texts, style=st.id, options=SamplingOptions(seed=1), resample=True)
    reads = recognize(rec, [l.offsets for l in lines])
    for t, r in zip(texts, reads):
        total += 1
        first = (r.split() or [""])[0].strip(".,;:!?\"'").lower()
        own = t.split()[0].lower()
        if first and len(last) > 1 and first != own and (first == last or first.startswith(last[:3])):
            leaks.append((st.id, last, t, r))
print(json.dumps({"lines": total, "leaks": len(leaks), "examples": leaks[:10], "seconds": round(time.time() - t0)}, indent=1))
