"""MMDetection support: contract reader, adapter and fixture trainer."""
