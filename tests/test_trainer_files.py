"""The trainer's file checks (rpl_interfaces.trainer_files), made by the trainer node at
start and by the learning launch before any node starts."""

from __future__ import annotations

import pytest

from rpl_interfaces.trainer_files import check_trainer_files


def test_the_trainer_files_are_checked_before_any_work(tmp_path):
    model, checkpoint = str(tmp_path / 'out' / 'actor.onnx'), str(tmp_path / 'out' / 'ckpt.pt')
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'bag.mcap').write_bytes(b'recorded')
    check_trainer_files(model, checkpoint, '', [str(bag)])  # a new learner: fine
    assert not (tmp_path / 'out').exists()  # the write probe leaves nothing behind

    def refused(message: str, *args) -> None:
        with pytest.raises(ValueError, match=message):
            check_trainer_files(*args)

    refused('model_path is empty', '', checkpoint, '', [])
    # Each checkpoint would have replaced the model.
    refused('model_path and checkpoint_path are the same file', model, model, '', [])
    refused('one inside the other', model, model + '/c.pt', '', [])
    refused("model_path 'out/' names a folder", 'out/', checkpoint, '', [])
    # The run would write over the checkpoint it starts from (another run's).
    refused('checkpoint_path and init_from are the same file', model, checkpoint, checkpoint, [])
    # An output inside a bag it reads: the recording would be written over.
    refused(
        'model_path .*bag.mcap is in the bag', str(bag / 'bag.mcap'), checkpoint, '', [str(bag)]
    )
    refused('checkpoint_path .* is in the bag', model, str(bag / 'ckpt.pt'), '', [str(bag)])
    (bag / 'metadata.yaml').write_text('')  # the bag listed by its storage file
    by_file = [str(bag / 'bag.mcap')]
    refused('model_path .*actor.onnx is in the bag', str(bag / 'actor.onnx'), '', '', by_file)
    (tmp_path / 'a_folder').mkdir()
    refused(
        'model_path .* cannot be written: .* is a folder', str(tmp_path / 'a_folder'), '', '', []
    )
    refused('init_from: no checkpoint at', model, checkpoint, str(tmp_path / 'none.pt'), [])
    refused('bags: no bag at', model, checkpoint, '', [str(tmp_path / 'no_bag')])
    existing = tmp_path / 'keep.onnx'
    existing.write_bytes(b'another run')
    refused('exists and this trainer starts a new learner', str(existing), checkpoint, '', [])
    # With a checkpoint to resume, the model is that run's (the trainer checks which file).
    (tmp_path / 'ckpt.pt').write_bytes(b'')
    check_trainer_files(str(existing), str(tmp_path / 'ckpt.pt'), '', [])
    assert (
        bag / 'bag.mcap'
    ).read_bytes() == b'recorded' and existing.read_bytes() == b'another run'
