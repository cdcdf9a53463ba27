import unittest

from calc import mean, median


class MeanTest(unittest.TestCase):
    def test_mean_of_three(self) -> None:
        self.assertEqual(mean([1.0, 2.0, 6.0]), 3.0)

    def test_empty_raises(self) -> None:
        with self.assertRaises(ValueError):
            mean([])


class MedianTest(unittest.TestCase):
    def test_odd_count(self) -> None:
        self.assertEqual(median([3.0, 1.0, 2.0]), 2.0)

    def test_even_count(self) -> None:
        self.assertEqual(median([4.0, 1.0, 3.0, 2.0]), 2.5)


if __name__ == "__main__":
    unittest.main()
