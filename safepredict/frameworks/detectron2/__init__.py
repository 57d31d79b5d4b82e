"""Detectron2 support: contract reader, adapter and fixture trainer."""
