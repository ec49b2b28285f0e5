"""vpcwatch core: ingest, parse and store AWS VPC Flow Logs and CloudTrail events. Never imports Textual."""
