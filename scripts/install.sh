#!/bin/bash
# Install what mnovs needs on Debian 12, as root. Idempotent, and quick when
# everything is present: apt runs only for missing packages, pip only when
# pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mininet openvswitch-switch openvswitch-testcontroller iperf3 iperf
              telnet iputils-ping ethtool tcpdump tshark bridge-utils iproute2
              psmisc python3-venv python3-pip pmacct)

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (Mininet needs it): sudo make install" >&2
    exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "*** apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# OVS's run directory: ovs-testcontroller (Mininet's default controller)
# creates its control socket there and dies without it. It is a tmpfs
# directory that only a started OVS service makes, and apt in a container
# or CI image (policy-rc.d) does not start the service.
mkdir -p /var/run/openvswitch

# A venv that sees Debian's Mininet (importable only from /usr/bin/python3).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mininet.net' 2>/dev/null; then
    echo "*** venv: creating .venv"
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.mnovs-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
        || ! .venv/bin/python -c 'import mininet.net, mnovs, pyroute2, scapy, pytest, matplotlib, ryu' 2>/dev/null; then
    echo "*** pip: installing mnovs and its Python dependencies"
    .venv/bin/python -m pip install -q --upgrade pip
    # Ryu 4.34's setup.py (pbr, easy_install hooks) builds only with an old
    # setuptools; pip's isolated build would fetch the newest, which fails.
    .venv/bin/python -m pip install -q 'setuptools<70' wheel pbr
    .venv/bin/python -m pip install -q --no-build-isolation \
        'ryu==4.34' 'eventlet==0.33.3' 'dnspython>=2,<2.3'
    .venv/bin/python -m pip install -q -e '.[test,ryu]'
    echo "$want" > "$stamp"
fi
