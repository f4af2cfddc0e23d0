"""Assets in data-flow order: landing -> warehouse -> ml -> campaigns -> dispatch."""
