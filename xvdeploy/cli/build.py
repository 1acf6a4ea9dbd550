import click


@click.command("build")
def build() -> None:
    """Placeholder."""
