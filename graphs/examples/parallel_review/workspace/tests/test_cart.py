import unittest

from shop.cart import most_expensive, total


class CartTest(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([1.0, 2.0], discount=0.5), 1.5)

    def test_most_expensive(self):
        self.assertEqual(most_expensive([1, 3, 2]), 3)
