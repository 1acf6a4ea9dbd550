"""The operators: PSSA, X-volution, X-volution(SA), ACmix, Swin window attention (training and folded forms)."""
from xvdeploy.ops.acmix import ACmix, ACmixFolded
from xvdeploy.ops.acmix_swin import ACmixWindowAttention, WindowAttention, WindowAttentionFolded
from xvdeploy.ops.pssa import pssa_transform
from xvdeploy.ops.xvolution import XVolution, XVolutionFolded
from xvdeploy.ops.xvolution_sa import XVolutionSA, XVolutionSAFolded

__all__ = ["ACmix", "ACmixFolded", "ACmixWindowAttention", "WindowAttention", "WindowAttentionFolded", "pssa_transform", "XVolution", "XVolutionFolded", "XVolutionSA", "XVolutionSAFolded"]
