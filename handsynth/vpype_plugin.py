"""The vpype plugin: ``vpype handsynth "Dear Ada," --style s03 ...`` writes the text as a layer
of pen strokes, so that plotter users compose it with ``linesort``, ``linemerge``,
``linesimplify``, ``pagesize``, ``gwrite`` and the rest.

Registered through the package's ``vpype.plugins`` entry point (``pyproject.toml``); vpype is an
optional dependency (``pip install handsynth[plotter]``): only this module imports it.

The command is a vpype *generator* (like vpype's own ``text``): it adds the writing to the target
layer (``-l/--layer``, default: the current one, else a new one). The strokes are those of
``plotter.plot_pages`` in their written order (vpype's ``linesort`` orders them): the page in true
size (``--width`` pixels at ``--dpi``), its top-left corner at (0, 0); several pages are stacked
one below the other. Ink colour and pen width are vpype's business (``color``, ``penwidth``).

vpype imports every installed plugin when it starts, so this module stays light: it imports no
torch (nor the ``handsynth`` writer) until the command runs.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import click
import vpype as vp
import vpype_cli

from .errors import HandsynthError
from .layout import ALIGNS, PageOptions
from .plotter import plot_pages
from .render import Ink


@lru_cache(maxsize=2)
def _writer(model: str | None):
    import handsynth

    return handsynth.load_model(model)


def lines(text: str, style=None, bias: float | None = None, seed: int | None = None,
          width: int = PageOptions.width, dpi: int = Ink.dpi, align: str = PageOptions.align,
          model: str | None = None, skip_unknown: bool = False) -> vp.LineCollection:
    """The writing as a vpype ``LineCollection`` (vpype's units: CSS pixels, 1/96 inch). ``bias``
    and ``seed``: None for ``SamplingOptions``' defaults."""
    from .sampling import SamplingOptions   # (torch: only once there is something to write)

    bias = SamplingOptions.bias if bias is None else bias
    seed = SamplingOptions.seed if seed is None else seed
    drawing = _writer(model).write(text, style=style, bias=bias, seed=seed, width=width, align=align,
                                   dpi=dpi, skip_unknown=skip_unknown)
    px = vp.convert_length("mm")
    lc = vp.LineCollection()
    top = 0.0
    for page in plot_pages(drawing, order=False):
        for s in page.strokes:
            lc.append((s[:, 0] + 1j * (s[:, 1] + top)) * px)
        top += page.height
    return lc


@click.command()
@click.argument("text", type=vpype_cli.TextType())
@click.option("--style", type=vpype_cli.TextType(), default=None,
              help="A built-in style id or name (see `handsynth styles`).")
@click.option("--style-file", type=vpype_cli.PathType(exists=True, dir_okay=False), default=None,
              help="A JSON sample of your own handwriting.")
@click.option("--bias", type=vpype_cli.FloatType(), default=None,
              help="Neatness: 0 wild ... 10 very neat (default: as `handsynth write`).")
@click.option("--seed", type=vpype_cli.IntegerType(), default=None,
              help="Random seed (default: as `handsynth write`).")
@click.option("--width", type=vpype_cli.IntegerType(), default=PageOptions.width,
              help=f"Page width in pixels, as `handsynth write --width` (default: {PageOptions.width}).")
@click.option("--dpi", type=vpype_cli.IntegerType(), default=Ink.dpi,
              help=f"Pixels per inch: sets the physical size (default: {Ink.dpi}).")
@click.option("--align", type=click.Choice(ALIGNS), default=PageOptions.align,
              help="Line alignment (default: left).")
@click.option("--model", type=vpype_cli.TextType(), default=None,
              help="A shipped model's name or a model file (default: the shipped lstm).")
@click.option("--skip-unknown", is_flag=True, help="Drop characters the model cannot write.")
@vpype_cli.generator
def handsynth(text, style, style_file, bias, seed, width, dpi, align, model, skip_unknown) -> vp.LineCollection:
    """Write TEXT in handwriting (handsynth's model) as a layer of pen strokes.

    The page is --width pixels wide at --dpi (1200 px at 150 dpi: 203 mm), its top-left corner at
    (0, 0). Follow with `linesort` to cut pen-up travel, `pagesize`/`layout` to place it on
    paper, and `gwrite` (vpype-gcode) or `write` to plot it.
    """
    if style and style_file:
        raise click.BadParameter("give either --style or --style-file, not both")
    try:
        return lines(text, style=Path(style_file) if style_file else style, bias=bias, seed=seed,
                     width=width, dpi=dpi, align=align, model=model, skip_unknown=skip_unknown)
    except HandsynthError as e:
        raise click.ClickException(str(e)) from None


handsynth.help_group = "Plugins"
