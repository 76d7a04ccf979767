"""``riverops demo``: the card-fraud stream, the live view and the plot of a run."""
