import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

/** Which module's migrations create which tables. */
const tablesByModule = {
  crebitos: ['clientes', 'transacoes'],
  counter: ['counters'],
  accounts: ['users', 'sessions'],
  increments: ['increments'],
  attendance: ['departments', 'course_units', 'attendance_sheets', 'registrations']
}

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
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^\\.\\./(?!accounts/)[^./]+/', message: 'modules do not import each other (accounts aside)' }
          ]
        }
      ]
    }
  },
  // Modules own their tables: a module's SQL names no table of another's (it reads their data through
  // what that module exports, like accounts' displayNameOf). Tests may look at any table.
  ...Object.entries(tablesByModule).map(([module, own]) => ({
    files: [`src/modules/${module}/**/*.ts`],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: `TemplateElement[value.raw=/\\b(from|join|into|update|table)\\s+(${Object.values(tablesByModule)
            .flat()
            .filter((table) => !own.includes(table))
            .join('|')})\\b/i]`,
          message: `the ${module} module's SQL reads only its own tables`
        }
      ]
    }
  })),
  {
    // The browser UI: data from people and the server goes into pages as text only, and no
    // script-readable storage holds anything (the session is an HttpOnly cookie).
    files: ['web/**/*.ts'],
    languageOptions: { globals: globals.browser },
    rules: {
      'no-restricted-properties': [
        'error',
        ...['innerHTML', 'outerHTML', 'insertAdjacentHTML'].map((property) => ({
          property,
          message: 'insert text with textContent or build nodes'
        })),
        { object: 'document', property: 'write', message: 'build nodes instead' }
      ],
      'no-restricted-globals': [
        'error',
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
