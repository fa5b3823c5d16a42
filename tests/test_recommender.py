"""The saved recommender reloads to identical recommendations; bad input is a clear error."""

import os

import pytest
import torch

from eager_llm.model import Recommender
from eager_llm.train import LoraSettings, StageConfig, train_stage
from test_io import mode_of, plain_file_mode, plain_folder_mode
from train_fixture import problem


@pytest.mark.parametrize("lora", [False, True])
def test_save_load_round_trip_recommends_identically(tmp_path, lora, recwarn, umask_022):
    torch.manual_seed(0)
    eager, tokenizer, samples, index, first = problem(with_index=True)
    config = StageConfig(epochs=1, lr=3e-3, batch_size=16, max_length=128, checkpoint_every=100,
                         mixed_precision="no", lora=LoraSettings(r=4, alpha=8, dropout=0.0) if lora else None)
    train_stage(eager, tokenizer, samples[:32], config, str(tmp_path / "run"), progress=False)
    recommender = Recommender(eager, tokenizer, index, first)
    histories = [[1, 2, 3], [10, 4], [59, 60, 7, 8]]
    items, scores = recommender.recommend(histories, k=5, num_beams=8)
    assert items.shape == (3, 5) and bool(((items >= 1) & (items <= 60)).all())
    recommender.save_pretrained(tmp_path / "saved")
    file_mode, folder_mode = plain_file_mode(tmp_path), plain_folder_mode(tmp_path)
    for folder, _, files in os.walk(tmp_path / "saved"):  # readable like anything else the user makes
        assert mode_of(folder) == folder_mode
        assert {mode_of(os.path.join(folder, name)) for name in files} <= {file_mode}
    loaded = Recommender.from_pretrained(tmp_path / "saved")
    loaded.save_pretrained(tmp_path / "saved again")  # as stage 2 saves what it loaded from stage 1
    Recommender.from_pretrained(tmp_path / "saved again")
    assert not [w for w in recwarn if "base_model_name_or_path" in str(w.message)]  # peft's stale-path warning
    again, again_scores = loaded.recommend(histories, k=5, num_beams=8)
    assert torch.equal(items, again)
    assert torch.equal(scores, again_scores)


def test_bad_input():
    eager, tokenizer, _, index, first = problem(with_index=True)
    recommender = Recommender(eager, tokenizer, index, first)
    with pytest.raises(ValueError, match="unknown item ids \\[61\\]"):
        recommender.recommend([[1, 61]])
    with pytest.raises(ValueError, match="history 0 is empty"):
        recommender.recommend([[]])
    with pytest.raises(FileNotFoundError, match="not a saved recommender"):
        Recommender.from_pretrained("/nonexistent/folder")
    from train_fixture import word_tokenizer

    with pytest.raises(ValueError, match="lacks 32 index tokens"):
        Recommender(eager, word_tokenizer(), index, first)
