"""Small shared helpers: logging, atomic files, run loading."""
