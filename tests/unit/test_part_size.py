from hypothesis import given
from hypothesis import strategies as st

from pgautodumper import storage

TiB = 1024**4


@given(database_size=st.integers(min_value=0, max_value=64 * TiB))
def test_ten_thousand_parts_always_reach_the_s3_object_limit(database_size):
    base = storage.initial_part_size(database_size)
    sizes = [storage.part_size(n, base) for n in range(1, storage.MAX_PARTS + 1)]
    assert sum(sizes) >= 5 * TiB
    assert all(storage.MIN_PART_SIZE <= s <= storage.MAX_PART_SIZE for s in sizes)
    assert sizes == sorted(sizes)


@given(database_size=st.integers(min_value=0, max_value=5 * TiB))
def test_the_database_fits_at_the_starting_size(database_size):
    base = storage.initial_part_size(database_size)
    assert base * storage.MAX_PARTS >= database_size
    assert base % storage.MiB == 0


def test_small_databases_start_at_12_mib():
    assert storage.initial_part_size(100 * storage.MiB) == 12 * storage.MiB
