# modules/vault planned (never applied) against a moto server, with a vault verify
# run's roles: tests/terraform/test_terraform_policies.py evaluates its rendered
# bucket and key policies for a primary-account principal.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "moto_endpoint" {
  type = string
}

provider "aws" {
  region                      = "eu-west-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    sts = var.moto_endpoint
  }
}

module "vault" {
  source = "../../../terraform/modules/vault"

  bucket_name          = "pgautodumper-vault-plan"
  source_account_id    = "111111111111"
  replication_role_arn = "arn:aws:iam::111111111111:role/pgautodumper-vault-replication"
  verify_role_arns     = ["arn:aws:iam::111111111111:role/pgautodumper-task-0001"]
}
