"""vpcwatch core: ingest, parse and store VPC Flow Logs and CloudTrail. Never imports Textual."""
