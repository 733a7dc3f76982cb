"""Metering and billing: usage recorded exactly once per activity, priced by a price table,
checked against tenant budgets before work starts, and summed into monthly invoices."""
