"""The OpenFlow 1.3 wire format, and nothing of the switch.

    ofp          the protocol's numbers (message types, errors, ports, flags)
    oxm          match fields: the OXM table, ofp_match encode/decode/validate
    ofp_actions  actions and instructions
    messages     the message bodies as dataclasses (FlowMod, PacketIn, ...)
    multipart    multipart requests and replies
    codec        whole messages: header, version negotiation, encode/decode

Everything here turns bytes into plain Python values and back, with the
spec's error for bad input (ofp.OFPError: type and code). The switch that
acts on the messages is mnovs/ofagent/; this package imports nothing of it
(tests/unit/test_layering.py checks).
"""
