"""Folding training-form networks into their inference form."""
from xvdeploy.folding.core import FoldRecord, find_bn_pairs, fold, fold_with_records, use_pssa_plugin

__all__ = ["FoldRecord", "find_bn_pairs", "fold", "fold_with_records", "use_pssa_plugin"]
