"""The layers of DESIGN.md, checked by walking imports with ast.

- mnovs/dp knows nothing of OpenFlow or of the processes above it.
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
            assert not name.startswith(('mnovs.ofagent', 'mnovs.vswitchd', 'mnovs.switch')), \
                f'{path.name} imports {name}'
            assert 'ofproto' not in name and 'openflow' not in name.lower(), \
                f'{path.name} imports {name}'


def test_vswitchd_stays_lean():
    modules, external = closure('mnovs.vswitchd')
    assert {'mnovs.dpctl', 'mnovs.dp.actions', 'mnovs.ofagent.handlers'} <= modules
    assert not external & {'mininet', 'scapy', 'matplotlib', 'ryu'}, external
