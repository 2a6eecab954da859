import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.data/', 'test-results/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      'no-console': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }]
    }
  },
  {
    // Modules stay apart: they reach each other only through accounts.
    files: ['src/modules/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ regex: '^\\.\\./(?!accounts/)[^./]+/', message: 'modules do not import each other (accounts aside)' }]
      }]
    }
  },
  {
    // The browser UI: data from people and the server goes into pages as text only, and no
    // script-readable storage holds anything (the session is an HttpOnly cookie).
    files: ['web/**/*.ts'],
    languageOptions: { globals: globals.browser },
    rules: {
      'no-restricted-properties': ['error',
        ...['innerHTML', 'outerHTML', 'insertAdjacentHTML'].map((property) => ({ property, message: 'insert text with textContent or build nodes' })),
        { object: 'document', property: 'write', message: 'build nodes instead' }
      ],
      'no-restricted-globals': ['error',
        { name: 'localStorage', message: 'the session lives in the HttpOnly cookie' },
        { name: 'sessionStorage', message: 'the session lives in the HttpOnly cookie' }
      ]
    }
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.test.ts'],
    rules: { 'no-console': 'off' }
  }
)
