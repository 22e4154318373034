terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # encryption_configuration on aws_sfn_state_machine arrived in 5.80.
      version = ">= 5.80, < 7.0"
    }
  }
}
