variable "moto_endpoint" {
  description = "URL of the moto server every AWS API call goes to, e.g. http://127.0.0.1:5000."
  type        = string
  default     = "http://127.0.0.1:5000"
}

variable "lambda_zip_path" {
  description = "The Lambda artifact (make package, or a zip the test builds)."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "pgad-local"
}

variable "bucket_name" {
  description = "Backup bucket created in moto."
  type        = string
  default     = "pgad-local-backups"
}
