"""HTCondor configuration, read exactly as HTCondor 25 reads it (docs/design.md §6).

Shared by pandad and panda_plugin.

The answers must equal the real HTCondor library's (``htcondor2.param``), which
tests/test_config_oracle.py checks. What is mirrored from HTCondor's
``config.cpp`` / ``condor_config.cpp``:

* sources: ``CONDOR_CONFIG`` (else ``/etc/condor/condor_config``; ``ONLY_ENV`` reads no
  file), then every file of ``LOCAL_CONFIG_DIR`` (byte order, skipping
  ``LOCAL_CONFIG_DIR_EXCLUDE_REGEXP``), then ``LOCAL_CONFIG_FILE`` (a list; a file may
  change the list), ``LOCAL_CONFIG_DIR`` again if a local file changed it, the user
  config file (``~/.condor/user_config``), then ``_CONDOR_NAME`` environment variables;
* lines: continuation with a trailing ``\\``, comment lines (a comment line inside a
  continuation keeps only its last character, as HTCondor does), ``NAME = value``,
  ``NAME : value``, ``NAME @=TAG`` ... ``@TAG``, ``include [ifexist] : file``,
  ``if``/``elif``/``else``/``endif``, ``error :`` and ``warning :``;
* macros: expanded lazily at lookup, except self references (``X = $(X) more``), which are
  expanded when the line is read; ``$(NAME)``, ``$(NAME:default)``, ``$ENV(X)``,
  ``$ENV(X:default)``, ``$(DOLLAR)``; ``$$(X)`` is left alone;
* lookup order: ``SUBSYS.NAME``, then ``NAME``, then HTCondor's built-in default; the host
  names are detected and cannot be overridden.

Metaknob lines (``use ROLE : ...``) are skipped: they set daemon, security and policy knobs,
none of which these programs read, so ``--config-val`` of a knob only a metaknob sets says it
is not defined.

Not supported, each a ``ConfigError`` naming file and line (never a silent wrong answer):
``if defined use ...``, ``include command``/``include output``/``into``, piped
configuration sources (``cmd |``), and the macro functions other than ``$ENV``
(``$INT``, ``$CHOICE``, ``$F...`` and friends) when a value that is looked up uses them.

Parsing and expansion are functions of text and dicts; only :meth:`HTCondorConfig.load`
touches files, the host name and the password database.

The package, one stage a module: ``syntax`` (errors, logical lines, booleans), ``macros``
(expansion), ``conditions`` (if/else), ``parser`` (statements and includes), ``loader`` (files,
environment, host names, ``HTCondorConfig``, ``--config-val``). Shared by both programs.
"""

from pandad.config.loader import (BUILTIN_DEFAULTS, DEFAULT_CONFIG_FILE, HTCondorConfig,
                                  config_val_main, detect_host_names)
from pandad.config.syntax import EXIT_CONFIG_ERROR, ConfigError, Entry, logical_lines, parse_bool

__all__ = ["BUILTIN_DEFAULTS", "DEFAULT_CONFIG_FILE", "EXIT_CONFIG_ERROR", "ConfigError", "Entry",
           "HTCondorConfig", "config_val_main", "detect_host_names", "logical_lines", "parse_bool"]
