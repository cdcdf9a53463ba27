PRICES = {"apple": 0.5, "bread": 2.25, "cheese": 4.0}


def price_of(name):
    return PRICES[name]
