"""The slow path above the datapath: translation of missed packets into
datapath actions and megaflow masks (for now NORMAL L2 learning)."""
