"""Research tools on top of the models: class activation maps, sweep result tables."""
