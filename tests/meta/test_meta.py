"""Meta-tests: the property check must fail on known-broken implementations,
and its failure message must name the layer and tensor that are wrong."""
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from bpcheck import strategies as bst
from bpcheck.backends import PythonBackend
from tests.meta.broken import BUGS
from tests.test_properties import check_agreement

# No shrinking: the meta-test only needs *a* failure; the budget is the profile's.
FIND_FAILURE = settings(phases=[Phase.generate], database=None, deadline=None)


def property_failure(candidate, dtype):
    @FIND_FAILURE
    @given(data=st.data())
    def prop(data):
        check_agreement(data.draw(bst.cases(dtypes=[dtype], arrays="seeded")), candidate)

    with pytest.raises(AssertionError) as info:
        prop()
    return str(info.value)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bug", BUGS, ids=lambda f: f.__name__)
def test_property_check_catches_bug(bug, dtype):
    message = property_failure(PythonBackend(bug, bug.__name__), dtype)
    assert f"{bug.__name__} layer" in message or f"{bug.__name__} input_grad" in message
    assert "class bug" in message
