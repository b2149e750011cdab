"""Plans of several runs (bench compare, bench sweep): the plan file, the grid, one driver, its backends."""
