// Package config is sluice's configuration: one declaration per option (a
// struct field with its yaml key, default and doc tags) yields the YAML
// parsing, the defaults, the validation and the reference documentation
// (`sluice config`). Unknown keys and wrong types are errors that give the
// line; ${ENV} and ${ENV:-default} are expanded in values so secrets can stay
// out of the file.
package config
