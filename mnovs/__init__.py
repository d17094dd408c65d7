"""mnovs: an Open vSwitch-shaped software switch in Python, for Mininet."""
