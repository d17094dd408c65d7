"""The OpenFlow 1.3 agent: the slow path above the datapath.

Connections to controllers, the flow tables and groups, meters, NORMAL MAC
learning, translation of missed packets into datapath actions and megaflow
masks (xlate), revalidation, statistics, and the traces that explain them.
The wire format it speaks is mnovs/openflow/.
"""
