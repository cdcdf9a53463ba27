def total(prices, discount=0):
    """The cart's total after a discount (a fraction, 0.1 = 10 %)."""
    subtotal = sum(prices)
    return round(subtotal * (1 - discount), 2)


def most_expensive(prices):
    return max(prices)
