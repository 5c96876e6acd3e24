"""Network bodies and heads (plain ``nn.Module`` s, no training logic)."""
