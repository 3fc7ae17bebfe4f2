{#- The smoke checks only read; there is nothing to remove. Kept so every component has its <component>.sls and
    clean.sls. #}
smoke checks leave nothing behind:
  test.nop
