"""The prompt array the engine hands the scheduler: uint16 for vocabularies that fit it."""

from __future__ import annotations

import numpy as np
import pytest

from sglrs.engine.engine_core import prompt_array


def test_narrowest_dtype_that_holds_the_vocabulary():
    assert prompt_array([0, 5, 65535], 49152).dtype == np.uint16
    assert prompt_array([0, 5, 65535], 1 << 16).dtype == np.uint16
    wide = prompt_array([0, 70_000, 128_255], 128_256)
    assert wide.dtype == np.int32 and wide.tolist() == [0, 70_000, 128_255]


@pytest.mark.parametrize("bad", [[70_000], [-1]])
def test_ids_the_dtype_cannot_hold_are_a_value_error(bad):
    with pytest.raises(ValueError, match="outside the vocabulary of 49152"):
        prompt_array(bad, 49152)
