"""Reports for the helpline's managers: counts per day, written as things happen."""
