"""The image test's preflight: a machine without one of podman's helpers is told which package to
install before any build starts (not `netavark: No such file or directory` from inside podman).

The missing tool is faked by pointing its lookup at a path that does not exist: uninstalling iptables
from the test machine to prove the point is not an option.
"""

from __future__ import annotations

import pytest

from . import podman as pm


def test_every_tool_present_on_a_machine_set_up_by_dev_sh():
    assert pm.missing_tools() == []


def test_a_missing_iptables_is_named_with_the_package_to_install(monkeypatch):
    monkeypatch.setitem(pm.REQUIRED_TOOLS, "iptables", ("iptables", ["/nonexistent/sbin/iptables"]))

    assert pm.missing_tools() == ["iptables"]
    with pytest.raises(RuntimeError) as raised:
        pm.require_tools()
    assert "iptables" in str(raised.value) and "apt-get install iptables" in str(raised.value)


def test_several_missing_tools_are_named_together(monkeypatch):
    monkeypatch.setitem(pm.REQUIRED_TOOLS, "runc", ("runc", ["/nonexistent/runc"]))
    monkeypatch.setitem(pm.REQUIRED_TOOLS, "netavark", ("netavark", ["/nonexistent/netavark"]))

    with pytest.raises(RuntimeError, match=r"needs runc, netavark\b.*apt-get install runc netavark"):
        pm.require_tools()
