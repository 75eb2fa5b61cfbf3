"""Datasets for hart-vlm. `hart_vlm.data.assembly` generates furniture-assembly guides."""
