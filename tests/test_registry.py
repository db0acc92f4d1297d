"""The registry: checks at registration, soft failure of broken plugins, plugin origin."""
import hashlib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import methods.registry as registry
from methods import Method, PluginError, UnknownMethodError, get_method, method_names, plugin_origin, register
from methods.cam import CAM

PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def faulty(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    return importlib.import_module("faulty_plugins")


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that reloads plugins (entry points mocked per test) and forgets them afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_BROKEN", {})
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    return registry


class FakeDist:
    def __init__(self, name, version):
        self.name, self.version, self.metadata = name, version, {"Name": name}


class FakeEntryPoint:
    """What importlib.metadata gives: name, value, the distribution, and load()."""

    def __init__(self, name, value, dist=("somepkg", "1.2.3")):
        self.name, self.value, self.dist = name, value, FakeDist(*dist)

    def load(self):
        module, _, attr = self.value.partition(":")
        return getattr(importlib.import_module(module), attr)


def _entry_points(monkeypatch, *eps):
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: list(eps) if group == registry.ENTRY_POINT_GROUP else [])


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownMethodError, match="known methods: .*cam"):
        get_method("gradcam-typo")


def test_builtins_are_registered():
    assert "cam" in method_names()
    assert get_method("cam").family == "cnn"


@pytest.mark.parametrize("cls_name, message", [
    ("NoTitle", "needs a title of its own"),
    ("InheritedTitle", "inherits 'CAM'"),         # would have labelled two rows "CAM"
    ("PlainConfig", "Config must be a @dataclass"),
])
def test_register_rejects_what_the_harness_cannot_use(faulty, cls_name, message):
    with pytest.raises(PluginError, match=message) as info:
        register(getattr(faulty, cls_name))
    assert "\n" not in str(info.value)


def test_register_checks_the_name():
    class Upper(Method):
        name = "Upper"
        title = "U"

    class Dotted(Method):
        name = "my.cam"
        title = "D"

    class Unnamed(CAM):
        title = "Unnamed"

    with pytest.raises(PluginError, match="must be lower case"):
        register(Upper)
    with pytest.raises(PluginError, match="must be lower case"):
        register(Dotted)
    with pytest.raises(PluginError, match="name of its own .*inherits 'cam'"):
        register(Unnamed)


def test_register_requires_defaults_for_every_option():
    class Required(Method):
        name = "fx_required"
        title = "Required"

        @dataclass(frozen=True)
        class Config:
            k: int

    with pytest.raises(PluginError, match="give every option a default"):
        register(Required)


def test_register_clash_is_one_line_naming_both_classes(faulty):
    with pytest.raises(PluginError) as info:
        register(faulty.ClashingCAM)
    message = str(info.value)
    assert "faulty_plugins.ClashingCAM" in message and "methods.cam.CAM" in message
    assert "\n" not in message
    assert get_method("cam") is CAM


def test_entry_point_plugins_are_loaded_with_their_origin(fresh_registry, monkeypatch, tmp_path):
    (tmp_path / "fx_ep_plugin.py").write_text(
        "from dataclasses import dataclass\nfrom methods import Method\n\n"
        "class MyCam(Method):\n    name = 'mycam-ep'\n    title = 'MyCAM'\n\n"
        "    @dataclass(frozen=True)\n    class Config:\n        k: int = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_points(monkeypatch, FakeEntryPoint("mycam-ep", "fx_ep_plugin:MyCam"))
    cls = get_method("mycam-ep")
    assert cls.__name__ == "MyCam" and cls.make_config({"k": 5}).k == 5
    assert plugin_origin(cls) == {"distribution": "somepkg", "version": "1.2.3",
                                  "source": "entry point mycam-ep = fx_ep_plugin:MyCam"}


def test_broken_and_clashing_entry_points_are_skipped_with_one_line_each(fresh_registry, monkeypatch, faulty, capsys):
    eps = [
        FakeEntryPoint("fx_notitle", "faulty_plugins:NoTitle", ("brokenpkg", "0.1")),
        FakeEntryPoint("fx_inherited", "faulty_plugins:InheritedTitle", ("brokenpkg", "0.1")),
        FakeEntryPoint("fx_plainconfig", "faulty_plugins:PlainConfig", ("brokenpkg", "0.1")),
        FakeEntryPoint("cam", "faulty_plugins:ClashingCAM", ("clashpkg", "2.0")),
        FakeEntryPoint("gone", "no_such_module_anywhere:Gone", ("ghostpkg", "9")),
        FakeEntryPoint("fx_transposed", "faulty_plugins:TransposedCAM", ("goodpkg", "1.0")),
    ]
    _entry_points(monkeypatch, *eps)
    names = method_names()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    # The good plugin and every built-in load; each bad one is one warning line naming where and why.
    assert "fx_transposed" in names and "cam" in names and get_method("cam") is CAM
    assert len(lines) == 5, lines
    expected = [("fx_notitle", "brokenpkg 0.1", "needs a title of its own"),
                ("fx_inherited", "brokenpkg 0.1", "inherits 'CAM'"),
                ("fx_plainconfig", "brokenpkg 0.1", "Config must be a @dataclass"),
                ("cam", "clashpkg 2.0", "already taken by methods.cam.CAM"),
                ("gone", "ghostpkg 9", "ModuleNotFoundError")]
    for line, (ep, dist, reason) in zip(lines, expected):
        assert line.startswith("warning: plugin skipped: entry point " + ep + " = "), line
        assert dist in line and reason in line, line
    broken = registry.broken_plugins()
    assert "Traceback" in broken["gone"].details and "no_such_module_anywhere" in broken["gone"].details
    with pytest.raises(UnknownMethodError, match="was skipped .*bench check-plugin fx_notitle"):
        get_method("fx_notitle")


def test_entry_point_named_unlike_its_method_is_skipped(fresh_registry, monkeypatch, faulty, capsys):
    _entry_points(monkeypatch, FakeEntryPoint("transposed", "faulty_plugins:TransposedCAM"))
    assert "fx_transposed" not in method_names()
    assert "named 'transposed' but TransposedCAM.name is 'fx_transposed'" in capsys.readouterr().err


def test_bench_plugins_module_from_the_current_folder(fresh_registry, monkeypatch, tmp_path):
    """A module beside the user (the console script does not put the folder on sys.path)."""
    (tmp_path / "fx_here_plugin.py").write_text(
        "from methods import Method\nfrom methods.cam import GapLinearNet\n\n"
        "class HereCam(Method):\n    name = 'fx_here'\n    title = 'Here'\n\n"
        "    def build(self, num_classes, backbone):\n        return GapLinearNet(backbone, num_classes)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setenv(registry.PLUGINS_ENV, "fx_here_plugin")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    _entry_points(monkeypatch)
    try:
        cls = get_method("fx_here")
        # Ray workers start in other folders: they find the module through PYTHONPATH.
        assert str(tmp_path) in os.environ["PYTHONPATH"].split(os.pathsep)
        from methods.source import normalised_tree, source_digest   # comments and docstrings do not count

        normalised = source_digest(normalised_tree((tmp_path / "fx_here_plugin.py").read_bytes())).encode()
        digest = hashlib.sha256(b"fx_here_plugin.py\0" + normalised + b"\0")
        assert plugin_origin(cls) == {"distribution": "unpackaged:fx_here_plugin",
                                      "version": "src-" + digest.hexdigest()[:12], "source": "module fx_here_plugin"}
    finally:
        sys.modules.pop("fx_here_plugin", None)


def test_broken_bench_plugins_module_is_skipped(fresh_registry, monkeypatch, faulty, capsys):
    monkeypatch.setenv(registry.PLUGINS_ENV, "faulty_plugins:NoTitle, faulty_plugins:TransposedCAM")
    _entry_points(monkeypatch)
    assert "fx_transposed" in method_names()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BENCH_PLUGINS module 'faulty_plugins:NoTitle'" in err[0] and "title" in err[0]


def test_plugin_origin_version_attribute_and_builtins():
    from importlib.metadata import version

    assert plugin_origin(CAM) == {"distribution": "au-cam-bench", "version": version("au-cam-bench"),
                                  "source": "built-in"}

    class Pinned(CAM):
        name = "fx_pinned"
        title = "Pinned"
        version = "2.5"

    assert plugin_origin(Pinned)["version"] == "2.5"
    assert plugin_origin(Pinned)["distribution"] == f"unpackaged:{__name__}"
