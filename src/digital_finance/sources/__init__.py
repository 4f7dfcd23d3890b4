"""Where records come from. Each source yields chunks of raw lines with their positions."""
