"""``xvdeploy zoo``: the model zoo with parameters and MACs at the default input."""
from __future__ import annotations

import click

from xvdeploy.cli.options import quiet_option


@click.command("zoo")
@click.option("--no-macs", is_flag=True, help="Skip counting MACs (faster).")
@quiet_option
def zoo(no_macs: bool, quiet: bool) -> None:
    """List the zoo's architectures: input, parameters and MACs (training / folded form).

    MACs count convolutions and matrix products (torch's FLOP counter / 2);
    element-wise work (PSSA products, attention-window products, BN) is not counted.
    """
    from xvdeploy import zoo as zoo_api
    from xvdeploy.format import format_table
    from xvdeploy.progress import reporting, step

    rows = []
    names = zoo_api.names()
    with reporting(not quiet), step("building the zoo's models" + ("" if no_macs else " and counting MACs"),
                                     total=len(names), unit="models") as task:
        for i, name in enumerate(names):
            task.update(done=i, message=f"zoo: {name} ({i + 1}/{len(names)})")
            shape = "x".join(map(str, zoo_api.input_shape(name)))
            if no_macs:
                model = zoo_api.create(name)
                rows.append([name, shape, f"{zoo_api.count_parameters(model) / 1e6:.2f}M", "", "",
                             zoo_api.description(name)])
                continue
            s = zoo_api.summary(name)
            rows.append([name, shape, f"{s.parameters / 1e6:.2f}M / {s.folded_parameters / 1e6:.2f}M",
                         _si(s.macs), _si(s.folded_macs), s.description])
    params = "params (train)" if no_macs else "params (train / folded)"
    click.echo(format_table(["name", "input", params, "MACs train", "MACs folded", "description"], rows))


def _si(n: int) -> str:
    return f"{n / 1e9:.3f}G" if n >= 1e8 else f"{n / 1e6:.3f}M"
