"""dataset_stats on hand-made tables with values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ppr.data.interactions import Interactions
from ppr.data.stats import count_quantiles, dataset_stats, rating_histogram


def table(**kw) -> Interactions:
    return Interactions.from_arrays(
        [1, 1, 1, 2, 2, 3], [10, 20, 30, 10, 20, 10], [5, 4, 3, 2, 5, 1],
        [86_400, 2 * 86_400, 0, 11 * 86_400, 5, 6], source="hand", **kw,
    )  # fmt: skip


def test_values_by_hand():
    st = dataset_stats(table())
    assert (st["users"], st["items"], st["interactions"]) == (3, 3, 6)
    assert st["density"] == pytest.approx(6 / 9)
    assert st["ratings"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 2}
    assert st["rating_mean"] == pytest.approx(20 / 6)
    assert (st["positives"], st["users_with_positives"]) == (3, 2)
    assert st["positive_share"] == pytest.approx(0.5)
    # per-user counts [3, 2, 1]; per-item counts [3, 2, 1] -> same quantiles (linear interpolation)
    expected = {"min": 1, "25%": 1.5, "50%": 2.0, "75%": 2.5, "90%": 2.8, "99%": 2.98, "max": 3,
                "mean": 2.0}  # fmt: skip
    for key in ("user_activity", "item_popularity"):
        assert st[key] == pytest.approx(expected)
    assert (st["top1pct_items"], st["top1pct_item_share"]) == (1, 0.5)
    span = st["time_span"]
    assert (span["start"], span["end"], span["days"]) == (0, 11 * 86_400, 11.0)
    assert span["end_utc"] == "1970-01-12 00:00:00"
    assert (st["attributes"], st["titles"], st["genres"]) == ([], False, False)


def test_side_data_and_no_timestamps():
    attrs = pd.DataFrame({"gender": ["F", "M", "F"], "zip": [None, None, None]}, index=[1, 2, 3])
    x = Interactions.from_arrays([1, 2, 3], [7, 7, 8], [1.0, 1.0, 1.0], user_attributes=attrs,
                                 item_titles={7: "Seven"})  # fmt: skip
    st = dataset_stats(x)
    assert st["attributes"] == ["gender"]  # all-missing columns are not "present"
    assert st["titles"] is True and st["time_span"] is None
    assert st["positives"] == 0 and st["ratings"] == {"1": 3}


def test_histogram_bins_many_levels():
    r = np.linspace(0, 1, 101)
    h = rating_histogram(r)
    assert len(h) == 10 and sum(h.values()) == 101
    keys = list(h)
    assert keys[0] == "[0, 0.1)" and keys[-1] == "[0.9, 1]"
    assert count_quantiles(np.array([4]))["99%"] == 4.0
