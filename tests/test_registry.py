from dataclasses import dataclass

import pytest

import methods.registry as registry
from methods import Method, UnknownMethodError, get_method, method_names, register


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownMethodError, match="known methods: .*cam"):
        get_method("gradcam-typo")


def test_builtins_are_registered():
    assert "cam" in method_names()
    assert get_method("cam").family == "cnn"


def test_entry_point_plugins_are_loaded(monkeypatch):
    class MyCam(Method):
        name = "mycam-ep"
        title = "MyCAM"

        @dataclass(frozen=True)
        class Config:
            k: int = 3

    class EP:
        def load(self):
            return MyCam

    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [EP()] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(registry._REGISTRY, "cam", registry._REGISTRY["cam"])
    try:
        assert get_method("mycam-ep") is MyCam
        assert MyCam.make_config({"k": 5}).k == 5
        with pytest.raises(ValueError, match="its options: k"):
            MyCam.make_config({"q": 1})
    finally:
        registry._REGISTRY.pop("mycam-ep", None)


def test_register_rejects_bad_plugins():
    class NoTitle(Method):
        name = "notitle"

    with pytest.raises(ValueError, match="title"):
        register(NoTitle)

    class Upper(Method):
        name = "Upper"
        title = "U"

    with pytest.raises(ValueError, match="lower-case"):
        register(Upper)
