"""Meta-tests: the property check fails on known-broken implementations from the zoo, and its
failure message names the layer, the tensor and the class."""
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from bpcheck.cases import strategies as bst
from bpcheck.run.backends import PythonBackend
from tests.meta.zoo import load
from tests.helpers.checks import check_agreement

# No shrinking: the meta-test only needs *a* failure; the budget is the profile's.
FIND_FAILURE = settings(phases=[Phase.generate], database=None, deadline=None)
BUGS = ["bug_dw_reshape", "bug_middle_layers", "bug_batch_mean", "bug_float32_compute"]


def property_failure(candidate, dtype):
    @FIND_FAILURE
    @given(data=st.data())
    def prop(data):
        check_agreement(data.draw(bst.cases(dtypes=[dtype], arrays="seeded")), candidate)

    with pytest.raises(AssertionError) as info:
        prop()
    return str(info.value)


# float32 arithmetic where float64 is asked is right in a float32 case; in a float64 one it is class
# precision (relative error ~1e-7), or bug where float32's exp range is passed (the first failing
# example Hypothesis meets may be either).
RIGHT_IN = {"bug_float32_compute": "float32"}
CLASSES = {"bug_float32_compute": ("precision", "bug")}


@pytest.mark.parametrize("name, dtype", [(name, dtype) for name in BUGS for dtype in ("float64", "float32")
                                         if RIGHT_IN.get(name) != dtype])
def test_property_check_catches_bug(name, dtype):
    member = load(name)
    message = property_failure(PythonBackend(member.backprop, name), dtype)
    assert f"{name} layer" in message or f"{name} input_grad" in message or f"{name} loss" in message
    assert any(f"class {c}" in message for c in CLASSES.get(name, (member.EXPECTED["class"],))), message
