from xvdeploy.cli.main import main
