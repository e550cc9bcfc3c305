"""Fine-tuning's cached split results key on the code too: other code retrains, the same code reuses."""
from __future__ import annotations

from iqabench.training import finetune

from test_finetune import _run, one_thread, tiny  # noqa: F401  (module fixtures)


def test_a_result_cached_by_other_code_is_recomputed(tiny, tmp_path, monkeypatch):  # noqa: F811
    saves = []  # step of every checkpoint written
    real_save = finetune._save
    monkeypatch.setattr(finetune, "_save", lambda *a, **k: (saves.append(a[1]), real_save(*a, **k)))
    monkeypatch.setattr(finetune, "code_fingerprint", lambda: "old-code")
    _run(tiny, tmp_path)
    first = len(saves)
    assert first > 0
    _run(tiny, tmp_path)  # same code: every split comes from its finished checkpoint, nothing is saved again
    assert len(saves) == first
    monkeypatch.setattr(finetune, "code_fingerprint", lambda: "fixed-code")
    _run(tiny, tmp_path)  # other code: trained again from the start
    assert len(saves) == 2 * first


def test_the_fingerprint_covers_the_fine_tuning_code():
    assert finetune.code_fingerprint() == finetune.code_fingerprint()
    assert len(finetune.code_fingerprint()) == 16
