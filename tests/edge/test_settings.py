"""Settings validation: camelCase and nesting accepted, bad values reported with the default kept."""

from __future__ import annotations

from lsp_server.settings import Settings, needs_reload, parse_settings


def test_camel_case_and_vscode_nesting_are_accepted() -> None:
    s, problems = parse_settings({"codellama": {"fimMode": "psm", "maxNewTokens": 12, "cacheReuse": False}})
    assert problems == []
    assert (s.fim_mode, s.max_new_tokens, s.cache_reuse) == ("psm", 12, False)
    s2, _ = parse_settings({"prefix_tokens": 300})
    assert s2.prefix_tokens == 300


def test_bad_values_are_reported_and_the_previous_value_kept() -> None:
    base = Settings(max_new_tokens=20)
    s, problems = parse_settings({"maxNewTokens": 0, "device": "tpu", "cacheReuse": "yes", "model": 3}, base)
    assert s.max_new_tokens == 20 and s.device == "auto" and s.cache_reuse is True and s.model is None
    text = "\n".join(problems)
    assert "maxNewTokens" in text and "1 to 1024" in text
    assert "device" in text and "cpu" in text and "cuda" in text
    assert "cacheReuse" in text and "true or false" in text
    assert "model" in text


def test_empty_model_means_the_embedded_one_and_unknown_keys_are_kept_aside() -> None:
    s, problems = parse_settings({"model": "", "futureOption": 1}, Settings(model="/x"))
    assert s.model is None and problems == [] and s.extra == {"futureOption": 1}


def test_only_model_settings_need_a_reload() -> None:
    base = Settings()
    assert needs_reload(base, parse_settings({"model": "/other"})[0])
    assert needs_reload(base, parse_settings({"quantization": "nf4"})[0])
    assert not needs_reload(base, parse_settings({"maxNewTokens": 9, "fimMode": "spm"})[0])


def test_non_object_settings_are_ignored() -> None:
    s, problems = parse_settings(None)
    assert s == Settings() and problems == []


def test_cross_file_settings() -> None:
    s, problems = parse_settings({"crossFileContext": True, "crossFileTokens": 1024})
    assert problems == [] and s.cross_file_context is True and s.cross_file_tokens == 1024
    s2, problems = parse_settings({"crossFileContext": "on", "crossFileTokens": -1}, s)
    assert len(problems) == 2 and s2.cross_file_context is True and s2.cross_file_tokens == 1024
    assert Settings().cross_file_context is False  # off by default: measured no gain with the embedded model
    assert not needs_reload(Settings(), s)
