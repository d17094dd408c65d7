"""The layers of DESIGN.md, checked by walking imports with ast.

- mnovs/dp knows nothing of OpenFlow, sFlow or of the processes above it.
- mnovs/openflow, the wire format, imports nothing of the switch.
- The agent (mnovs/ofagent, mnovs/sflow) imports neither the Mininet plugin
  nor the daemons and the bridge layer, and never the modules that own the
  data ports' sockets (it sees packets only through upcalls and execute).
- The vswitchd process stays lean: nothing it imports pulls in Mininet or
  scapy (each costs tens of MB per switch).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'mnovs'


def imports_of(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # `from mnovs import dpctl` imports a module, not a name.
            yield from (f'{node.module}.{alias.name}' for alias in node.names)


def module_path(name):
    parts = name.split('.')
    candidate = PACKAGE.parent.joinpath(*parts)
    if candidate.with_suffix('.py').exists():
        return candidate.with_suffix('.py')
    if (candidate / '__init__.py').exists():
        return candidate / '__init__.py'
    return None


def closure(start):
    seen, todo, external = set(), [start], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        if path is None:
            if not name.startswith('mnovs.'):   # an mnovs name that is no module is a symbol
                external.add(name.split('.')[0])
            continue
        todo.extend(imports_of(path))
    return seen, external


def test_datapath_does_not_import_the_slow_path():
    for path in (PACKAGE / 'dp').glob('*.py'):
        for name in imports_of(path):
            assert not name.startswith(('mnovs.ofagent', 'mnovs.sflow', 'mnovs.vswitchd',
                                        'mnovs.switch')), f'{path.name} imports {name}'
            assert 'ofproto' not in name and 'openflow' not in name.lower(), \
                f'{path.name} imports {name}'


def test_vswitchd_stays_lean():
    modules, external = closure('mnovs.vswitchd')
    assert {'mnovs.dpctl', 'mnovs.dp.actions', 'mnovs.ofagent.handlers'} <= modules
    assert not external & {'mininet', 'scapy', 'matplotlib', 'ryu'}, external


def direct_imports(package):
    for path in (PACKAGE / package).glob('*.py'):
        for name in imports_of(path):
            if name.startswith('mnovs'):
                yield path.name, name


def test_the_wire_format_imports_nothing_of_the_switch():
    found = list(direct_imports('openflow'))
    assert found, 'mnovs/openflow has no internal imports at all?'
    for module, name in found:
        assert name.startswith('mnovs.openflow'), f'openflow/{module} imports {name}'


PLUGIN_AND_DAEMONS = ('mnovs.switch', 'mnovs.vswitchd', 'mnovs.bridge', 'mnovs.ovs_ctl',
                      'mnovs.daemon', 'mnovs.process', 'mnovs.launchers')
DATA_PORT_SOCKETS = ('mnovs.dp.netdev', 'mnovs.dp.tap', 'mnovs.dp.vxlan')


def test_the_agent_imports_neither_the_plugin_nor_the_daemons_nor_port_sockets():
    for package in ('ofagent', 'sflow'):
        found = list(direct_imports(package))
        assert any(name.startswith('mnovs.dp') for _, name in found), package
        for module, name in found:
            assert not name.startswith(PLUGIN_AND_DAEMONS), f'{package}/{module} imports {name}'
            assert not name.startswith(DATA_PORT_SOCKETS), f'{package}/{module} imports {name}'
