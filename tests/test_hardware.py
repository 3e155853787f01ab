"""The bfloat16 choice follows the CPU (or HANDSYNTH_BF16), and sampling and training use it."""
import numpy as np
import pytest

import handsynth
from handsynth.hardware import cpu_flags, fast_bf16, use_bf16
from handsynth.sampling import SamplingOptions


def test_fast_bf16_follows_the_cpu_flags_and_the_override(monkeypatch):
    monkeypatch.delenv("HANDSYNTH_BF16", raising=False)
    flags = cpu_flags().split()
    assert fast_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
    monkeypatch.setenv("HANDSYNTH_BF16", "1")
    assert fast_bf16() and use_bf16(None) and not use_bf16(False)
    monkeypatch.setenv("HANDSYNTH_BF16", "0")
    assert not fast_bf16() and not use_bf16(None) and use_bf16(True)


@pytest.mark.parametrize("forced", ["0", "1"])
def test_default_sampling_uses_the_chosen_dtype(monkeypatch, forced):
    monkeypatch.setenv("HANDSYNTH_BF16", forced)
    hw = handsynth.load_model()
    default = hw.lines(["dtype"], options=SamplingOptions(seed=2))[0]
    stated = hw.lines(["dtype"], options=SamplingOptions(seed=2, bf16=forced == "1"))[0]
    other = hw.lines(["dtype"], options=SamplingOptions(seed=2, bf16=forced != "1"))[0]
    np.testing.assert_array_equal(default.offsets, stated.offsets)
    assert default.offsets.shape != other.offsets.shape or not np.array_equal(default.offsets, other.offsets)


# threads ----------------------------------------------------------------------------------------------
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from handsynth import hardware  # noqa: E402
from handsynth.errors import HandsynthError  # noqa: E402


@pytest.fixture
def policy(monkeypatch):
    """No override in the environment (the tests' conftest sets OMP_NUM_THREADS=1); torch's
    thread count put back afterwards."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("HANDSYNTH_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_override_and_bad_values(policy, monkeypatch):
    monkeypatch.setenv("HANDSYNTH_THREADS", "3")
    for work in hardware.WORKS:
        assert hardware.choose_threads(work).n == 3
    assert hardware.configure_threads("write").why == "set by HANDSYNTH_THREADS" and torch.get_num_threads() == 3
    monkeypatch.setenv("HANDSYNTH_THREADS", "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert hardware.choose_threads("write") == hardware.Threads(2, "set by OMP_NUM_THREADS")
    for bad in ("0", "x", "-1", "2.5", "100000"):
        monkeypatch.setenv("HANDSYNTH_THREADS", bad)
        with pytest.raises(HandsynthError, match=rf"^HANDSYNTH_THREADS='{bad}': give a whole number of threads "
                                                 r"from 1 to 1024, or auto$"):
            hardware.configure_threads("write")


@pytest.mark.skipif(not os.path.exists("/sys/devices/system/cpu/cpu0/topology/core_id"), reason="Linux sysfs")
def test_cores_are_the_allowed_physical_ones(policy):
    n = hardware.cores()
    assert 1 <= n <= len(hardware.allowed_cpus()) <= (os.cpu_count() or 1)
    topo = "/sys/devices/system/cpu/cpu{}/topology/{}".format
    assert n == len({(Path(topo(c, "physical_package_id")).read_text(), Path(topo(c, "core_id")).read_text())
                     for c in hardware.allowed_cpus()}) or hardware._cpu_quota() is not None


@pytest.mark.skipif(not os.path.exists("/proc/stat") or hardware.cores() < 2, reason="Linux, 2 cores or more")
def test_writing_leaves_a_busy_core_alone_training_never_follows_the_load(policy):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        hardware.busy_elsewhere(0)
        time.sleep(0.5)
        assert hardware.busy_elsewhere() >= 0.7   # the spinner, measured (this process slept)
        time.sleep(0.3)
        write = hardware.choose_threads("write")
        assert write.n <= hardware.cores() - 1 and " busy elsewhere" in write.why
        assert hardware.choose_threads("train").n == hardware.cores()
        assert hardware.choose_threads("train", workers=2).n == max(1, hardware.cores() // 2)
        assert hardware.configure_threads("serve", workers=64).n == 1 == torch.get_num_threads()
    finally:
        spinner.kill()
        spinner.wait()


_IDLE = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("hw", sys.argv[1])
hw = importlib.util.module_from_spec(spec); sys.modules["hw"] = hw; spec.loader.exec_module(hw)
done = hw.prepare_openmp()
import torch
torch.set_num_threads(2)
a = torch.randn(512, 512)
for _ in range(50):
    a @ a
t = os.times(); c0 = t.user + t.system
time.sleep(0.3)   # OpenMP's other thread: asleep, or spinning
t = os.times()
print(done, os.environ.get("OMP_WAIT_POLICY"), t.user + t.system - c0)
"""


@pytest.mark.skipif(sys.platform != "linux" or hardware.cores() < 2, reason="Linux, 2 cores or more")
def test_prepare_openmp_puts_idle_threads_to_sleep_and_keeps_a_user_setting():
    env = {k: v for k, v in os.environ.items() if k not in (*hardware.WAIT_SETTINGS, "OMP_NUM_THREADS")}

    def idle(**extra):
        r = subprocess.run([sys.executable, "-c", _IDLE, hardware.__file__], env={**env, **extra},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        done, policy, cpu = r.stdout.split()
        return done == "True", policy, float(cpu)

    done, policy, cpu = idle()
    assert done and policy == "PASSIVE" and cpu < 0.05
    done, policy, cpu = idle(OMP_WAIT_POLICY="ACTIVE")   # the user's own: kept (and it spins)
    assert not done and policy == "ACTIVE" and cpu > 0.1


def test_the_command_sets_the_wait_policy_before_torch_loads():
    """The installed ``handsynth`` command and ``python -m handsynth`` go through
    ``__main__.run``, which sets the wait policy before the CLI imports torch."""
    from importlib.metadata import entry_points
    script = next(e for e in entry_points(group="console_scripts") if e.name == "handsynth")
    assert script.value == "handsynth.__main__:run"
    env = {k: v for k, v in os.environ.items() if k not in hardware.WAIT_SETTINGS}
    probe = ("import os, sys\nfrom handsynth.__main__ import run\nassert 'torch' not in sys.modules\n"
             "rc = run(['styles', '-q'])\nprint(rc, os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == ["0", "PASSIVE", "True"], r.stdout
