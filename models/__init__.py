"""The model zoo (installed as ``xvdeploy.models``); use it through :mod:`xvdeploy.zoo`."""
from xvdeploy.models import digits, resnet, swin  # noqa: F401  (register the architectures)
