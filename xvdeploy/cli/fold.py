"""``xvdeploy fold``: training branches -> inference form, with a numeric proof."""
from __future__ import annotations

from pathlib import Path

import click

from xvdeploy.cli.options import SHAPE_HELP, arch_option, model_option, overwrite_option, quiet_option, state_key_option

#: Whole-model rel-L2 limits of the check (float64 / float32 folded vs float64 training form).
TOLERANCE_FLOAT64 = 1e-9
TOLERANCE_FLOAT32 = 1e-5
#: batch of the probe when --input-shape gives none
PROBE_BATCH = 2


@click.command("fold")
@click.argument("source", metavar="IN")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Folded checkpoint to write (.safetensors).")
@arch_option
@model_option
@state_key_option
@click.option("--check/--no-check", default=True, help="Compare outputs before and after the fold.")
@click.option("--input-shape", default=None, metavar=SHAPE_HELP,
              help=f"Probe shape for the check [default: the zoo model's input, batch {PROBE_BATCH}].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, help="Seed of the probe input.")
@overwrite_option
@quiet_option
def fold(source: str, output: Path, arch: str | None, model_factory: str | None, state_key: str | None, check: bool,
         input_shape: str | None, seed: int, overwrite: bool, quiet: bool) -> None:
    """Fold the training form in IN (checkpoint or zoo name) into the inference form and save it.

    Every X-volution, X-volution(SA) and ACmix block becomes its inference form
    and every BatchNorm that provably follows a convolution is folded into it.
    The table lists each folded layer and its relative L2 error on a probe input.
    """
    import torch

    from xvdeploy.checkpoint import model_form, save_checkpoint
    from xvdeploy.cli.options import checked_outputs, echo_unwrapped, existing_path, parse_input_shape
    from xvdeploy.errors import ParityError, XVDeployError, first_line
    from xvdeploy.folding import fold_with_records
    from xvdeploy.folding.check import check_fold
    from xvdeploy.loading import default_input_shape, load_model_source
    from xvdeploy.memory import check_forward_fits
    from xvdeploy.progress import reporting, step

    source_path = existing_path(source)
    checked_outputs(overwrite, (source_path,), (output, (".safetensors",)))
    given = parse_input_shape(input_shape) if input_shape and check else None
    with reporting(not quiet):
        with step(f"loading {source}"):
            model, arch_name = load_model_source(source, arch, model_factory, state_key)
        echo_unwrapped(model)
        if model_form(model) == "folded":
            click.echo(f"{source} is already folded; writing it unchanged")
        with step("folding"):
            folded, records = fold_with_records(model)
        if check and records:
            if given is not None:
                shape = (given[0] or PROBE_BATCH, *given[1])
            else:
                shape = default_input_shape(arch_name, batch=PROBE_BATCH)
            if shape is None:
                raise XVDeployError(f"cannot choose a probe input for this model; give --input-shape {SHAPE_HELP} "
                                    "or --no-check")
            text = "x".join(map(str, shape))
            check_forward_fits(model, shape, f"the fold check at {text} (float64, every folded layer's input "
                               "and output kept)", "give a smaller --input-shape, or --no-check", itemsize=8,
                               keep_activations=True)
            probe = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
            try:
                with step(f"checking the fold on a {text} probe (float64 and float32)"):
                    result = check_fold(model, folded, records, probe)
            except RuntimeError as exc:
                raise XVDeployError(f"the model cannot take a probe input of shape {text} "
                                    f"({first_line(exc)}); give a valid --input-shape") from None
            _print_table(result)
            if result.total_float64 > TOLERANCE_FLOAT64 or not result.float32_ok(TOLERANCE_FLOAT32):
                raise ParityError(f"fold check failed: rel-L2 {result.total_float64:.2e} (float64, limit "
                                  f"{TOLERANCE_FLOAT64:g}), {result.total_float32:.2e} (float32, limit "
                                  f"max({TOLERANCE_FLOAT32:g}, 2 × the training form's own "
                                  f"{result.train_float32:.2e})); nothing written")
        else:
            _print_records(records)
        with step(f"writing {output}"):
            save_checkpoint(folded, output, arch=arch_name)
    merged = sum(r.merged for r in records)
    click.echo(f"folded {len(records)} layers ({merged} into one conv) -> {output}")


def _print_table(result) -> None:
    from xvdeploy.format import format_table

    rows = [[c.record.name, c.record.operator, "yes" if c.record.merged else "no", f"{c.rel_error:.2e}",
             c.record.note] for c in result.layers]
    click.echo(format_table(["layer", "operator", "one conv", "rel err (f64)", "note"], rows))
    click.echo(f"total rel-L2 vs float64 training form: {result.total_float64:.2e} (folded, float64), "
               f"{result.total_float32:.2e} (folded, float32; the training form's own float32 error is "
               f"{result.train_float32:.2e}); worst layer {result.worst_layer():.2e}")


def _print_records(records) -> None:
    from xvdeploy.format import format_table

    rows = [[r.name, r.operator, "yes" if r.merged else "no", r.note] for r in records]
    click.echo(format_table(["layer", "operator", "one conv", "note"], rows))
