"""The datapath: ports, flow-key extraction, flow caches and actions.

It knows nothing of OpenFlow. Its client (the slow path) sees packets only
through upcalls and sends them only through execute; see datapath.py.
"""
