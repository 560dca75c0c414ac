"""Runtime: the modules that own outside programs (git, tmux, processes) and the worker that drives them."""
